"""C ABI for line PCs: `libdefectrt.so` / `defectrt.dll` with the plain C header `defectrt.h`.

The library is native C++ (native/ in the repository; header native/include/defectrt.h) and links no
Python. `python -m defectrt.capi.build -o DIR` runs its CMake build from a repository clone and copies
the library and header into DIR; see native/README.md for device builds.
"""
