"""A FastAPI app for tests/test_asgi.py (no postponed annotations: FastAPI reads them)."""

from fastapi import FastAPI
from pydantic import BaseModel


class Item(BaseModel):
    name: str
    price: float


def make_app() -> FastAPI:
    """:returns: a FastAPI app with an async and a plain (threaded) endpoint."""
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, q: str = "") -> dict:
        return {"item_id": item_id, "q": q}

    @app.post("/items")
    def create_item(item: Item) -> dict:  # a plain def: FastAPI runs it in its threads
        return {"name": item.name, "double": item.price * 2}

    return app
