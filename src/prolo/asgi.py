"""The ASGI entry point for uvicorn: ``prolo.asgi:app`` with settings from the environment."""

from prolo.app import create_app

app = create_app()
