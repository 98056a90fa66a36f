"""`fineimagen serve`: an HTTP API in the OpenAI images style (FastAPI + uvicorn), one model
in memory behind a bounded, batching queue. Needs the `serve` extra."""
