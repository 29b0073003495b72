"""C ABI for line PCs: `libdefectrt.so` / `defectrt.dll` with the plain C header `defectrt.h`.

Build with `python -m defectrt.capi.build -o DIR` (see README.md in this folder). `_bridge` is the
Python half the library calls; nothing here is imported by the rest of defectrt.
"""
