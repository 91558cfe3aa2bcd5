"""What the experiment and the analysis both name or read, below both of them: the arms
and phase kinds (`arms`), the task sets (`tasks`) and the grid factors behind the
footprints (`sustainability`). Shipped data comes through alems.datafiles."""
