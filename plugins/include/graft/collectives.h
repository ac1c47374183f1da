#ifndef GRAFT_COLLECTIVES_H
#define GRAFT_COLLECTIVES_H
/**
 * @file
 * The collectives extension: what a communication plugin (graft-mpi) offers
 * with graft_host.add_extension(host, GRAFT_COLLECTIVES_NAME,
 * GRAFT_COLLECTIVES_VERSION, &table, ...), and what graft::distributed and
 * nn::DistributedDataParallel run on.
 *
 * Every collective takes contiguous tensors in host memory (graft stages
 * tensors of other devices through the host) and starts asynchronously: it
 * hands back a request, which test polls and wait completes; a request is
 * freed by the test that reports it done, by wait, or by abort.
 * all_reduce_blocking is the one that runs to completion in the call. Loading the
 * plugin costs nothing: the process joins its group only in init. Every
 * function may be called from any thread.
 */
#include <stddef.h>
#include <stdint.h>

#include "graft/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The extension's name and the version this header describes. */
#define GRAFT_COLLECTIVES_NAME "collectives"
#define GRAFT_COLLECTIVES_VERSION 1

/** How all_reduce combines the ranks' values. */
typedef enum {
  GRAFT_REDUCE_SUM = 0,
  GRAFT_REDUCE_AVERAGE = 1, /**< the sum divided by the group's size (floating-point dtypes) */
  GRAFT_REDUCE_MAX = 2,
  GRAFT_REDUCE_MIN = 3
} graft_reduce_op;

/** A collective in flight (the plugin's). */
typedef struct graft_collective_request graft_collective_request;

/** The table. Each function returns a graft_status and, on failure, writes why into message. */
typedef struct {
  void* ctx; /**< the plugin's, handed back to every function */
  /** Joins the process group (the launcher's: rank and size come from its
   * environment) and writes this process's rank and the group's size. A
   * second init returns the same. */
  int32_t (*init)(void* ctx, int32_t* rank, int32_t* size, char* message, size_t message_size);
  /** Leaves the group, after every request has completed. */
  int32_t (*finalize)(void* ctx, char* message, size_t message_size);
  /** Starts combining tensor, in place, over the group. */
  int32_t (*all_reduce)(void* ctx, const DLTensor* tensor, int32_t op, graft_collective_request** request,
                        char* message, size_t message_size);
  /** Starts copying root's tensor, in place, to every rank. */
  int32_t (*broadcast)(void* ctx, const DLTensor* tensor, int32_t root, graft_collective_request** request,
                       char* message, size_t message_size);
  /** Starts gathering every rank's input into output (size × the input's
   * elements, rank r's at r × the input's elements) on every rank. */
  int32_t (*all_gather)(void* ctx, const DLTensor* input, const DLTensor* output, graft_collective_request** request,
                        char* message, size_t message_size);
  /** Starts a barrier. */
  int32_t (*barrier)(void* ctx, graft_collective_request** request, char* message, size_t message_size);
  /** Writes 1 to *done and frees the request when it has completed, else 0;
   * moves every request of the process along. */
  int32_t (*test)(void* ctx, graft_collective_request* request, int32_t* done, char* message, size_t message_size);
  /** Waits for the request to complete (and frees it), at most timeout_seconds
   * (0: no limit); when time runs out it returns GRAFT_ERROR with
   * *timed_out 1, and the request stays in flight. */
  int32_t (*wait)(void* ctx, graft_collective_request* request, double timeout_seconds, int32_t* timed_out,
                  char* message, size_t message_size);
  /** Ends every process of the job with exit status code; does not return. */
  void (*abort)(void* ctx, int32_t code);
  /** all_reduce, run to completion in the call (MPI's blocking all-reduce,
   * faster than a started one for large tensors). When the other ranks have
   * not joined after timeout_seconds (0: no limit), it writes the line
   * on_timeout to stderr and ends the job. */
  int32_t (*all_reduce_blocking)(void* ctx, const DLTensor* tensor, int32_t op, double timeout_seconds,
                                 const char* on_timeout, char* message, size_t message_size);
} graft_collectives;

#ifdef __cplusplus
}
#endif

#endif /* GRAFT_COLLECTIVES_H */
