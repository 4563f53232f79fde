// QSHARD_VECTOR_CLONES compiles a function for AVX-512, AVX2 and the baseline and picks one at
// load time (GCC's target_clones). Callers build their file with -ffp-contract=off so that every
// clone rounds alike. Under ThreadSanitizer the clones are left out: their load-time resolvers
// are instrumented and run before the sanitizer's runtime exists, which crashes every binary
// at start.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define QSHARD_VECTOR_CLONES
#else
#define QSHARD_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
