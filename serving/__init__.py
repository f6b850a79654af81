"""The inspection service (FastAPI): station frames in, verdicts out, every one recorded.

Start it with `qc serve`; build it in code with `serving.app.create_app(settings)`.
"""
