#pragma once
/// @file
/// What graft says on its own, and where it goes.
///
/// graft writes nothing unasked except warnings (each once: a slow path taken,
/// a fused kernel that failed) and errors it cannot throw. Notices such as
/// which Vulkan device a plugin picked are at level info. The level comes
/// from the environment variable `GRAFT_LOG` (`error`, `warn`, `info` or
/// `debug`; default `warn`) or from set_log_level(); lines go to stderr unless
/// the application installs its own handler:
/// @code
/// graft::set_log_handler([](graft::LogLevel level, const std::string& line) {
///   my_logger.write(graft::to_string(level), line);
/// });
/// @endcode
#include <functional>
#include <string>

namespace graft {

/// How important a line is; each level includes those above it.
enum class LogLevel {
  error,  ///< something failed that could not be reported as a graft::Error
  warn,   ///< a slow or unexpected path was taken (the default level)
  info,   ///< notices: which device a plugin chose, what loaded
  debug,  ///< details for graft's own debugging
};

/// The level's name: "error", "warn", "info" or "debug".
const char* to_string(LogLevel level);

/// Lines of this level and above are shown; the rest are dropped.
void set_log_level(LogLevel level);

/// The current level: set_log_level()'s, else `GRAFT_LOG`'s, else warn.
LogLevel log_level();

/// Receives every line at or above the level, without graft's "graft: " prefix
/// and without a newline. Called from any thread, one call at a time.
using LogHandler = std::function<void(LogLevel level, const std::string& line)>;

/// Sends lines to handler instead of stderr; an empty handler restores stderr.
void set_log_handler(LogHandler handler);

/// Passes line to the handler (or stderr, as "graft: line") when level is
/// enabled. Plugins' notices arrive here at level info.
void log(LogLevel level, const std::string& line);

}  // namespace graft
