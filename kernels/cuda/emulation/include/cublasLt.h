// The host emulation of CUDA stands in for this header (kernels/cuda/emulation).
#pragma once
#include "kernels/cuda/emulation/emulated_blaslt.h"
