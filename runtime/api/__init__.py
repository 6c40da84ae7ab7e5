"""The HTTP API (FastAPI): the same app behind API Gateway + Lambda (Mangum) and under uvicorn
locally. ``create_app`` is in ``runtime.api.app``."""
