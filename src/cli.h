/*
 * cli.h - the objfs command line: parsing "objfs COMMAND [ARGS] [-o K=V,...] [--K=V]",
 * the object subcommands (ls, cat, put, rm, stat), --help/--version, and the dispatch
 * point of "objfs mount" (mount_main() in mount.h, when that module is built).
 *
 * Threads: cli_main runs on the main thread; the subcommands start the HTTP engine (and, for
 * a multipart put, upload threads) themselves and stop them before returning.
 */
#ifndef OBJFS_CLI_H
#define OBJFS_CLI_H

#include <stddef.h>

#include "opts.h"

struct http_config;
struct http_engine;
struct store;

/* Exit codes of every subcommand. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

/* Run the command line; returns the process exit code. */
int cli_main(int argc, char **argv);

/* The engine settings that the options describe (connection caps, timeouts, retries, TLS). */
void cli_http_config(const struct objfs_opts *o, struct http_config *cfg);

/*
 * Open the S3 store of bucket (with root prefix, "" for the bucket root) as the options
 * say: endpoint, region, path style, credentials (creds.h, from passwd_file/profile for
 * `dest` when dest is true). With check, also verify the bucket and credentials. Returns 0
 * with *st set, or an errno with one line (no "objfs: " prefix) in err.
 */
int cli_open_store(const struct objfs_opts *o, struct http_engine *eng, const char *bucket,
		   const char *prefix, int dest, int check, struct store **st, char *err,
		   size_t errlen);

/* Split "s3://bucket[/key]" into bucket and key (malloc'd; key "" when none). 0 or EINVAL. */
int cli_parse_s3_url(const char *url, char **bucket, char **key);

#endif
