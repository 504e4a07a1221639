"""The research instrument: seed-paired ablations (`ablate`: `ablate_plan`, `ablate_run`, `ablate_report`),
compute ladders (`ladder`: `ladder_plan`, `ladder_fit`, `ladder_report`), their progress lines (`progress`),
the benchmark (`bench`), their statistics (`stats`), analytic FLOPs (`flops`) and plots (`report`).

It sits above the trainer: it may import `jepagolf.train` and everything below it, never `jepagolf.cli`.
"""
