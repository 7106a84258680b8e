"""Entry paths: one module per real way users switch FP8 on, each exposing `run(ctx)`.

native, accelerator, trainer run inside the worker process; launch and multiproc start a real launcher
(`accelerate launch`, torchrun) on `launched.py` and merge the per-rank results; buggy_patch_if_missing and
buggy_patch_append reproduce the reference report's monkey-patch of `Accelerator.__init__`.
"""
