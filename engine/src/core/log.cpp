// Note [Quiet library]: graft is embedded in applications, so it prints
// nothing unasked but warnings (once each) and errors; notices are at level
// info. Every line goes through log(), to stderr or to the application's
// handler.
#include "graft/log.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <optional>

namespace graft {
namespace {

std::optional<LogLevel> parse(const char* name) {
  for (LogLevel l : {LogLevel::error, LogLevel::warn, LogLevel::info, LogLevel::debug})
    if (std::strcmp(name, to_string(l)) == 0) return l;
  return std::nullopt;
}

struct Logger {
  std::atomic<LogLevel> level{LogLevel::warn};
  std::recursive_mutex mutex;  // one line at a time, to the handler or stderr
  LogHandler handler;
  std::string bad_setting;  // a GRAFT_LOG value that names no level

  Logger() {
    if (const char* env = std::getenv("GRAFT_LOG"); env && *env) {
      if (auto l = parse(env))
        level = *l;
      else
        bad_setting = env;
    }
  }
};

Logger& logger() {
  static auto* l = new Logger;  // outlives static destruction: plugins may log at exit
  static std::once_flag warned;
  std::call_once(warned, [] {
    if (!l->bad_setting.empty())
      std::cerr << "graft: GRAFT_LOG='" << l->bad_setting
                << "' is not a level (error, warn, info or debug); using warn\n";
  });
  return *l;
}

}  // namespace

const char* to_string(LogLevel level) {
  switch (level) {
    case LogLevel::error:
      return "error";
    case LogLevel::warn:
      return "warn";
    case LogLevel::info:
      return "info";
    case LogLevel::debug:
      return "debug";
  }
  return "?";
}

void set_log_level(LogLevel level) { logger().level = level; }

LogLevel log_level() { return logger().level; }

void set_log_handler(LogHandler handler) {
  Logger& l = logger();
  std::lock_guard lock(l.mutex);
  l.handler = std::move(handler);
}

void log(LogLevel level, const std::string& line) {
  Logger& l = logger();
  if (level > l.level.load()) return;
  std::lock_guard lock(l.mutex);
  if (l.handler)
    l.handler(level, line);
  else
    std::cerr << "graft: " << line << "\n";
}

}  // namespace graft
