#pragma once
/// @file
/// The one header users include: it brings in every public name of graft.
///
/// @code
/// #include <graft/graft.h>  // CMake: find_package(graft), target graft::graft
/// @endcode
#include "graft/autocast.h"
#include "graft/autograd.h"
#include "graft/backend.h"
#include "graft/custom_function.h"
#include "graft/data.h"
#include "graft/device.h"
#include "graft/distributed.h"
#include "graft/dtype.h"
#include "graft/error.h"
#include "graft/log.h"
#include "graft/lr_scheduler.h"
#include "graft/memory.h"
#include "graft/nn/attention.h"
#include "graft/nn/functional.h"
#include "graft/nn/init.h"
#include "graft/nn/module.h"
#include "graft/nn/modules.h"
#include "graft/ops.h"
#include "graft/optim.h"
#include "graft/profiler.h"
#include "graft/scalar.h"
#include "graft/serialize.h"
#include "graft/shape.h"
#include "graft/state_dict.h"
#include "graft/tensor.h"
