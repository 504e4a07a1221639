"""The artifact: quantisation (int8, GPTQ int5/int6), the compressed container, size prediction and the
challenge's records folder. Modules: `grid` (the per-row int grids) under `quant` (round to nearest) and `gptq`;
`container`, `artifact`, `size`; `runs` (finished run folders, read and checked) under `records`.

Below the trainer and never above it: it may import `jepagolf.model`, `jepagolf.data`, `jepagolf.config` and
the ground modules (`outputs`, `jsonfile`, `sources`, `summary`, `tensor_bytes`), never `jepagolf.train`.
"""
