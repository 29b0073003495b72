"""model.py files of the ensemble's Python-backend steps, copied into a repository by `defectrt export triton`.

They run inside Triton's Python backend and import defectrt there (its device side: numpy, opencv, no torch),
so the pre- and post-processing are exactly the ones `Detector` runs."""
