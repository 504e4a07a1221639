"""The research instrument: seed-paired ablations (`ablate`), compute ladders (`ladder`), the benchmark
(`bench`), their statistics (`stats`), analytic FLOPs (`flops`) and plots (`report`).

It sits above the trainer: it may import `jepagolf.train` and everything below it, never `jepagolf.cli`.
"""
