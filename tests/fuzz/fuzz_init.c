/* fuzz_init.c: shared setup of every harness. */
#include "fuzz.h"

#include "util/log.h"

/* The code under test logs each refusal; millions of them would drown
 * libFuzzer's own output and slow it down. */
static void drop_line(enum log_level lvl, const char *line, void *arg)
{
	(void)lvl;
	(void)line;
	(void)arg;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_hook(drop_line, NULL);
	return 0;
}
