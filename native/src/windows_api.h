// <windows.h> for the _WIN32 code paths: without its min / max macros (they break std::min, numeric_limits::max) and
// its rarely used parts. Include it only under `#if defined(_WIN32)`.
#pragma once
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX  // MinGW's libstdc++ defines it already
#define NOMINMAX
#endif
#include <windows.h>
