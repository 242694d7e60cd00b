"""An agent whose reply is as large as asked; each run of its handler appends to a count file."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from flame_agents.agent import Agent, ContextModel


class BigContext(ContextModel):
    runs: int = 0


class Make(BaseModel):
    size: int
    count_file: str


class Blob(BaseModel):
    data: str


class BigAgent(Agent[BigContext]):
    """Replies with ``size`` characters."""

    def handle(self, req: Make, ctx: BigContext) -> Blob:
        with Path(req.count_file).open("a") as count:
            count.write("ran\n")
        ctx.runs += 1
        return Blob(data="x" * req.size)


if __name__ == "__main__":
    BigAgent.run()
