"""Data shipped with A-LEMS: task sets (tasks/), lookup tables (tables/), grid factors (factors/)."""
