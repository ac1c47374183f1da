/** @file
 * graft's plugin ABI: how a backend in a shared library gives graft its
 * devices and kernels. Plain C; no C++ type and no exception crosses it.
 *
 * A plugin exports one symbol, GRAFT_PLUGIN_ENTRY_SYMBOL, returning a static
 * graft_plugin_info. graft checks abi_version, then calls init() with a
 * graft_host through which the plugin adds device types and kernels. Every
 * function a plugin gives graft returns a graft_status and, on failure,
 * writes a NUL-terminated reason into the message buffer it was handed.
 *
 * Tensors cross as DLPack DLTensor views: data already points at the first
 * element (byte_offset is 0), strides count elements and are never NULL,
 * shapes and strides belong to graft and are valid only during the call.
 * bool tensors use type code GRAFT_DL_BOOL (DLPack's later kDLBool) with 8 bits.
 *
 * Ops are named by stable strings with a version ("add" version 1). A plugin
 * that registers a kernel for an op graft does not know (or a newer version
 * of one) has that kernel skipped with a note, and keeps working otherwise.
 * The ops, their categories, inputs and attributes are the rows of the op
 * table, graft/op_table.h, and are listed by `graft-info --ops`.
 */
#ifndef GRAFT_PLUGIN_H
#define GRAFT_PLUGIN_H

#include <dlpack/dlpack.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The plugin ABI version this header describes: a plugin puts it in graft_plugin_info.abi_version.
 *
 * Version 2 added graft_host.num_threads; version 3 added fusers
 * (graft_host.add_fuser) and graft_host.parallel_for; version 4 gave every
 * op a typed attribute struct (graft_op_attrs, from the op table), several
 * outputs, optional inputs, up to GRAFT_MAX_INPUTS inputs, bfloat16, layout
 * types and extension tables; version 5 added graft_kernel_args.contents.
 * graft loads plugins built for versions 4 and 5 (a version 4 plugin does
 * not read the fields added since): an older one is refused with a message
 * saying so (rebuild it against this header). */
#define GRAFT_PLUGIN_ABI_VERSION 5
/** The oldest plugin ABI version graft still loads. */
#define GRAFT_PLUGIN_ABI_OLDEST 4
/** The name of the one symbol a plugin exports: a graft_plugin_entry_fn. */
#define GRAFT_PLUGIN_ENTRY_SYMBOL "graft_plugin_entry"
/** The DLPack type code of bool tensors (DLPack's later kDLBool), 8 bits per element. */
#define GRAFT_DL_BOOL 6
/** The most input tensors a kernel call passes. */
#define GRAFT_MAX_INPUTS 8
/** The most output tensors a kernel call writes. */
#define GRAFT_MAX_OUTPUTS 4

/** What every function a plugin gives graft returns.
 *
 * On failure the function also writes a NUL-terminated reason into the message
 * buffer it was handed.
 */
typedef enum {
  GRAFT_OK = 0,            /**< the call succeeded */
  GRAFT_ERROR = 1,         /**< the call failed; the message says why */
  GRAFT_OUT_OF_MEMORY = 2, /**< an allocation could not be satisfied */
  GRAFT_INVALID = 3        /**< bad arguments (shapes, dtypes, devices) */
} graft_status;

/** dtype bits for graft_kernel.dtypes (and, one bit at a time, for the dtypes of fused nodes). */
enum {
  GRAFT_DTYPE_FLOAT32 = 1u << 0, /**< float32 */
  GRAFT_DTYPE_FLOAT64 = 1u << 1, /**< float64 */
  GRAFT_DTYPE_INT32 = 1u << 2,   /**< int32 */
  GRAFT_DTYPE_INT64 = 1u << 3,   /**< int64 */
  GRAFT_DTYPE_BOOL = 1u << 4,    /**< bool (GRAFT_DL_BOOL in a DLTensor) */
  GRAFT_DTYPE_BFLOAT16 = 1u << 5 /**< bfloat16 (DLPack's kDLBfloat, 16 bits) */
};

#include "graft/op_table.h"

/** One kernel call: the op, its tensors and its attributes.
 *
 * Optional inputs: an input the caller left out (an absent bias or mask)
 * has data, shape and strides NULL and ndim 0; the op's contract says which
 * may be absent. Ops that draw random numbers take a seed and an offset
 * among their attributes. graft zeroes the bytes of graft_op_attrs that the
 * op's member does not use, so a kernel may hash or compare the whole
 * struct. */
typedef struct {
  const char* op;     /**< stable op name */
  int32_t op_version; /**< the version graft implements */
  /** The number of input tensors (at most GRAFT_MAX_INPUTS). */
  int32_t n_inputs;
  /** The input tensors, as DLTensor views (see the notes at the top of this file). */
  const DLTensor* inputs;
  const DLTensor* output; /**< the first output, allocated by graft on the kernel's device */
  /** The number of outputs (at most GRAFT_MAX_OUTPUTS). */
  int32_t n_outputs;
  const DLTensor* outputs; /**< every output; outputs[0] is output */
  /** The op's attributes: read the member named after the op, e.g. attrs->softmax.dim. */
  const graft_op_attrs* attrs;
  /** Per tensor (inputs, then outputs): a layout id from graft_host.add_layout_type, or 0 for plain
   * strides. NULL for kernels of plugins that registered no layout type: their tensors are always
   * plain. An input in a layout is whole and contiguous in its shape (its strides describe the plain
   * tensor, not the memory); it reaches only kernels of the plugin that registered the layout, whose
   * supports returns 0 to have graft convert it first. An output's entry is 0 when the kernel may
   * write that output in one of its own layouts, using no more bytes than plain strides would; it
   * then sets the entry to that layout's id. An output that must stay plain has -1. */
  int64_t* layouts;
  /** Version 5. Per input: a number that names the state of its memory, unique to it (never reused,
   * for any tensor) until the memory is next written, and 0 when unknown. A kernel may keep what it
   * derives from an input (a weight reordered into its own format) and use it again for an input at
   * the same address with the same nonzero number. */
  const uint64_t* contents;
} graft_kernel_args;

/** Runs the op. May return before the device has finished (asynchronous
 * devices): graft calls the device's synchronize before any host read.
 * Returns a graft_status; on failure it writes a reason into message (message_size bytes). */
typedef int32_t (*graft_kernel_fn)(void* ctx, const graft_kernel_args* args, char* message, size_t message_size);
/** Returns 1 when the kernel takes this call (dtypes, shapes, strides), else 0. */
typedef int32_t (*graft_supports_fn)(void* ctx, const graft_kernel_args* args);

/** A kernel: one op on one device type, registered with graft_host.add_kernel.
 *
 * A kernel for an op (or op version) this graft does not know is skipped with
 * a note in PluginInfo::notes; the plugin keeps working otherwise.
 */
typedef struct {
  const char* op;          /**< stable op name, such as "add" */
  int32_t op_version;      /**< the op contract version the kernel was written for */
  const char* device_type; /**< "cpu" or a device type the plugin adds */
  uint32_t dtypes;         /**< GRAFT_DTYPE_* bits it takes, for listings and errors */
  int32_t priority;        /**< among kernels for one (op, device): higher runs first; reference is 0 */
  /** Runs a call (see graft_kernel_fn). */
  graft_kernel_fn run;
  graft_supports_fn supports; /**< NULL: every call whose first input's dtype is in dtypes (for "where",
                                   the second input's; for an op without inputs, the output's) */
  /** Passed back to run and supports as their first argument. */
  void* ctx;
} graft_kernel;

/** A device type with its own memory. graft never dereferences a pointer that
 * allocate returned, but it does offset it by bytes (a view of a block
 * starts inside it; a guard region follows it under GRAFT_CHECK_BOUNDS=1), so
 * device pointers must stay meaningful under byte arithmetic, as CUDA's do; a
 * backend whose memory is handles encodes (handle, offset) in the pointer.
 * graft caches freed blocks and reuses them; deallocate runs when it trims.
 *
 * A plugin adds it with graft_host.add_device_type. Every function but
 * memory_info is required; each takes ctx and the device's index first. */
typedef struct {
  const char* name;       /**< "example", "vulkan": devices are NAME:INDEX */
  int32_t dl_device_type; /**< DLDeviceType that kernels see in DLTensor.device */
  int32_t count;          /**< devices of this type (0: the type is skipped) */
  /** Passed back to every function below as its first argument. */
  void* ctx;
  /** Allocates nbytes on device index and stores the pointer in *out. */
  int32_t (*allocate)(void* ctx, int32_t index, size_t nbytes, void** out, char* message, size_t message_size);
  /** Frees a block that allocate returned (nbytes is its size). */
  void (*deallocate)(void* ctx, int32_t index, void* ptr, size_t nbytes);
  /** Copies nbytes from device memory src to host memory dst, returning once dst holds them. The copy
   * sees every write of the work queued on the device before it: a device that runs work
   * asynchronously orders the copy after that work (graft calls no synchronize first, so that a
   * host read costs one wait). */
  int32_t (*copy_to_host)(void* ctx, int32_t index, void* dst, const void* src, size_t nbytes, char* message,
                          size_t message_size);
  /** Copies nbytes from host memory src to device memory dst. */
  int32_t (*copy_from_host)(void* ctx, int32_t index, void* dst, const void* src, size_t nbytes, char* message,
                            size_t message_size);
  /** Copies nbytes from src to dst, both in the device's memory. */
  int32_t (*copy_on_device)(void* ctx, int32_t index, void* dst, const void* src, size_t nbytes, char* message,
                            size_t message_size);
  /** Returns once the work queued on device index has finished. */
  int32_t (*synchronize)(void* ctx, int32_t index, char* message, size_t message_size);
  /** Reports the device's name and memory; may be NULL.
   * name: a human-readable device name; free/total in bytes (0 when unknown). */
  int32_t (*memory_info)(void* ctx, int32_t index, char* name, size_t name_size, size_t* free_bytes,
                         size_t* total_bytes);
} graft_device_type;

/** @file
 * @par Fusion (version 3)
 * On a device with a fuser, graft records elementwise
 * ops instead of running them, and hands the fuser an expression to compute
 * in one pass when a value is needed (a host read, an op that is not
 * elementwise, an in-place write). The expression is a list of nodes in
 * evaluation order: each node reads earlier nodes, an input, or a scalar.
 * Every input and output is shaped like the loop (the outputs' shape):
 * a broadcast input has stride 0 along the dims it repeats.
 *
 * Node ops are graft's stable op names: the unary and binary elementwise
 * ops, the comparisons, "where" (condition, then, else), "clamp" and "copy"
 * (a conversion to the node's dtype), plus two leaves: "input" (value =
 * inputs[index]) and "scalar" (value = scalars[index], constant over the
 * loop). Scalars are run-time arguments: a kernel compiled for one
 * expression serves every value of them.
 *
 * Sums and several loops: a fuser whose supports says yes to "sum" also
 * takes "sum" nodes (one argument; the value is the sum of all its
 * elements, of shape []) and calls that hold several loops. A node's loop
 * is then the shape of the inputs it reads, directly or through other nodes
 * ("scalar" nodes fit any loop): each input and output is shaped like its
 * own loop, and the arguments of a node are all of one loop. A sum's value,
 * and what is computed from it, belong to the loop of shape [], which runs
 * once the sums of every other loop are complete; a sum never reads a value
 * of that loop. A "scalar" node as an output is of the loop of the output's
 * shape. */
/** A scalar of a fused expression: a run-time argument, constant over the loop. */
typedef struct {
  double f;  /**< the value for float dtypes */
  int64_t i; /**< the value for integer and bool dtypes */
} graft_scalar;

/** One node of a fused expression: an op on earlier nodes, an input or a scalar. */
typedef struct {
  const char* op; /**< stable op name, "input" or "scalar" */
  int32_t dtype;  /**< GRAFT_DTYPE_* bit: the type of the node's value */
  /** How many of args the node reads. */
  int32_t n_args;
  int32_t args[3]; /**< earlier nodes */
  int32_t index;   /**< "input": into inputs; "scalar": into scalars; "clamp": its bounds are scalars
                      [index] and [index + 1] */
  int32_t flags;   /**< "clamp": bit 0 it has a lower bound, bit 1 an upper one */
  /** The op's attributes (as in a kernel call; NULL for "input" and "scalar"). Scalars that vary
   * between calls of one kernel are passed as scalars instead, so that they are not part of its key. */
  const graft_op_attrs* attrs;
} graft_fused_node;

/** An expression for a fuser to compute in one pass, with its tensors and scalars. */
typedef struct {
  /** The number of nodes. */
  int32_t n_nodes;
  /** The nodes, in evaluation order. */
  const graft_fused_node* nodes;
  /** The number of input tensors. */
  int32_t n_inputs;
  /** The input tensors, shaped like the loop (stride 0 along the dims they broadcast). */
  const DLTensor* inputs;
  /** The number of outputs. */
  int32_t n_outputs;
  const DLTensor* outputs;     /**< fresh tensors of the loop's shape, written by the kernel */
  const int32_t* output_nodes; /**< the node each output receives */
  /** The number of scalars. */
  int32_t n_scalars;
  /** The values of the "scalar" nodes and of clamp's bounds. */
  const graft_scalar* scalars;
} graft_fused_args;

/** A fuser for one device type, registered with graft_host.add_fuser (ABI version 3). */
typedef struct {
  const char* device_type; /**< the device type whose elementwise ops it fuses */
  /** Passed back to supports, run and stat as their first argument. */
  void* ctx;
  /** 1 when the fuser computes op (a stable name, as in graft_fused_node) on
   * values of dtype (a GRAFT_DTYPE_* bit); graft asks once per op and dtype. */
  int32_t (*supports)(void* ctx, const char* op, int32_t dtype);
  /** Computes the expression's outputs. A failure makes graft run the same
   * ops one by one with the other backends, and report it once. */
  int32_t (*run)(void* ctx, const graft_fused_args* args, char* message, size_t message_size);
  /** Counters for graft::fusion_stats(): the index-th counter's name and value;
   * returns 0 past the last. May be NULL. */
  int32_t (*stat)(void* ctx, int32_t index, const char** name, double* value);
} graft_fuser;

/** A backend's own memory layout (a blocked format), registered with
 * graft_host.add_layout_type. A tensor with such a layout is seen by
 * everything outside that backend as plain strides: graft calls to_plain
 * before anything else reads it. */
typedef struct {
  const char* name; /**< for messages and counters, e.g. "onednn:nChw16c" */
  /** Passed back to to_plain as its first argument. */
  void* ctx;
  /** Writes src (in this layout) to dst (plain strides, same shape and dtype); layout is the id
   * add_layout_type gave, so one function may serve several layout types. */
  int32_t (*to_plain)(void* ctx, int64_t layout, const DLTensor* src, const DLTensor* dst, char* message,
                      size_t message_size);
} graft_layout_type;

typedef struct graft_host graft_host;
/** What graft hands a plugin's init: the functions through which it adds device types, kernels and fusers.
 *
 * Valid only during init, except num_threads and parallel_for, which a plugin
 * may keep. Each add function returns a graft_status and explains a refusal in
 * message.
 */
struct graft_host {
  /** The plugin ABI version of the graft that loads the plugin. */
  uint32_t abi_version;
  void* impl; /**< graft's; do not touch */
  /** Adds a device type (copied; the functions and ctx it points to must stay valid). */
  int32_t (*add_device_type)(graft_host* host, const graft_device_type* device, char* message, size_t message_size);
  /** Adds a kernel (copied); a kernel for an op graft does not know is skipped with a note, not refused. */
  int32_t (*add_kernel)(graft_host* host, const graft_kernel* kernel, char* message, size_t message_size);
  /** Writes a line to graft's log at level info, prefixed with the plugin's name. */
  void (*log)(graft_host* host, const char* line);
  /** graft's thread count (graft::set_num_threads; default: all cores), for a
   * backend with threads of its own. Unlike the rest of graft_host, this
   * function may be kept and called at any time, from any thread. */
  int32_t (*num_threads)(void);
  /** Version 3. Registers the plugin's fuser for a device type (one per type). */
  int32_t (*add_fuser)(graft_host* host, const graft_fuser* fuser, char* message, size_t message_size);
  /** Version 3. Runs body over [0, n) split into chunks of at least grain on
   * graft's threads, and returns when every chunk is done. May be kept and
   * called at any time, from any thread (nested calls run inline). */
  void (*parallel_for)(int64_t n, int64_t grain, void (*body)(void* ctx, int64_t begin, int64_t end), void* ctx);
  /** Version 4. Registers a memory layout of the plugin's (copied) and writes its id (nonzero) to *id. */
  int32_t (*add_layout_type)(graft_host* host, const graft_layout_type* layout, int64_t* id, char* message,
                             size_t message_size);
  /** Version 4. Offers an optional table of functions under a name and version (for example the
   * collectives of a communication plugin, "collectives" version 1), which the part of graft that
   * knows the name looks up; the table and what it points to must stay valid. A name graft does not
   * know is kept and ignored. */
  int32_t (*add_extension)(graft_host* host, const char* name, uint32_t version, const void* table, char* message,
                           size_t message_size);
};

/** What a plugin is: the static description its entry function returns.
 * @code
 * static int32_t init(graft_host* host, char* message, size_t message_size);
 * static const graft_plugin_info info = {GRAFT_PLUGIN_ABI_VERSION, "example", "0.1", "an example backend", init};
 * const graft_plugin_info* graft_plugin_entry(void) { return &info; }
 * @endcode
 */
typedef struct {
  uint32_t abi_version; /**< GRAFT_PLUGIN_ABI_VERSION the plugin was built against */
  const char* name;     /**< backend name, such as "onednn" */
  /** The plugin's version string, shown by graft::plugins(). */
  const char* version;
  /** What the plugin provides, in a few words. */
  const char* description;
  /** Adds the plugin's device types and kernels. A failure leaves the plugin
   * unloaded (graft drops whatever it had added) and is reported with the message. */
  int32_t (*init)(graft_host* host, char* message, size_t message_size);
} graft_plugin_info;

/** The type of the function a plugin exports as GRAFT_PLUGIN_ENTRY_SYMBOL. */
typedef const graft_plugin_info* (*graft_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* GRAFT_PLUGIN_H */
