/*
 * main.c - the entry point: process-wide setup that must happen before any thread exists,
 * then the command line (cli.c) or, when run as a mount(8) helper, mount_helper.c.
 *
 * Library init: the HTTP engine calls curl_global_init when the first engine is created,
 * which every subcommand does on this (still single) thread before starting others.
 */
#include "config.h"

#include <signal.h>
#include <stdbool.h>

#include "cli.h"
#include "log.h"

#include "mount_helper.h"
#include "s3xml.h"

int main(int argc, char **argv)
{
	/* A peer that closes a connection, or `objfs cat | head`, must not kill us: write()
	 * returns EPIPE instead. libcurl is told CURLOPT_NOSIGNAL by the engine. */
	signal(SIGPIPE, SIG_IGN);
	log_init("objfs", LOG_LEVEL_WARN, false);
	s3xml_global_init();
	if (mount_helper_wanted(argc, argv))
		return mount_helper_main(argc, argv);
	return cli_main(argc, argv);
}
