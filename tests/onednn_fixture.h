#pragma once
// The fixture of the graft-onednn tests (test_onednn.cpp, test_onednn_fusion.cpp):
// the plugin is loaded by default, and its kernels take small tensors too.
#include <cstdlib>
#include <string>
#include <vector>

#include "helpers.h"

// Set before the plugin loads.
inline const int kSmallOpsOnOneDnn = setenv("GRAFT_ONEDNN_MIN_ELEMENTS", "1", 1);

inline const graft::PluginInfo* onednn() {
  static std::vector<graft::PluginInfo> list = graft::plugins();
  for (const graft::PluginInfo& p : list)
    if (p.name == "onednn") return &p;
  return nullptr;
}

class Onednn : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(onednn(), nullptr) << "graft-onednn is built beside libgraft and loads by default";
    ASSERT_TRUE(onednn()->loaded) << onednn()->error;
  }
};
