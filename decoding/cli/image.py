"""``decoding image``: sample a PNG grid from an image diffusion model (see :mod:`decoding.image_api`).

    decoding image --model fashion-large --class 7 --n 64 --solver dpm_solver_pp --steps 10 --out grid.png
"""

from decoding.image_api import add_parser, run_cli

__all__ = ["add_parser", "run_cli"]
