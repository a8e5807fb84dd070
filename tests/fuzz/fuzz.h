/*
 * fuzz.h: what every harness in tests/fuzz shares.
 *
 * Each harness defines LLVMFuzzerTestOneInput() and checks invariants with
 * FUZZ_CHECK, which aborts (a finding for libFuzzer, a failure for the
 * corpus replay in gcc builds). Harnesses call only public parse/decode
 * functions and free what they return, so they survive signature-level
 * changes of the code under test.
 */
#ifndef CKPT_FUZZ_H
#define CKPT_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                        \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, \
				__LINE__, #cond);                               \
			abort();                                                \
		}                                                               \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif
