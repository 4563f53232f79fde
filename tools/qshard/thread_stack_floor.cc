// A floor under the stack size any library asks its threads for. A CUDA build links cuBLAS,
// cuBLASLt and cuSOLVER, whose thread-local storage (about 150 KB, 94 KB of it cuBLASLt's) glibc
// places in every thread's stack; it refuses to create a thread whose requested stack cannot
// hold that (EINVAL). civetweb, under the Prometheus exposer (--metrics-listen), asks for 100 KB
// stacks, so in CUDA builds the metrics server could not start ("null context when constructing
// CivetServer"). This definition of pthread_attr_setstacksize is exported from the program
// (tools/qshard/CMakeLists.txt), so the libraries' calls reach it, and it passes at least 1 MiB on.
// Loading the CUDA side as a plugin (dlopen, dynamic TLS) would make it unnecessary.
#include <dlfcn.h>
#include <pthread.h>

#include <algorithm>
#include <cstddef>

extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t size) {
  using SetStackSize = int (*)(pthread_attr_t*, size_t);
  static const SetStackSize next = reinterpret_cast<SetStackSize>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  constexpr size_t kFloor = size_t{1} << 20;
  return next(attr, std::max(size, kFloor));
}
