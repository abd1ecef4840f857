"""The example service as a real process (``python -m tests.backbone.logservice serve``), for the log tests.

Besides the example's routes it has ``/boom`` (an unhandled exception) and ``/chatty``
(a standard-library logger and a warning, as third-party libraries write them).
"""

from __future__ import annotations

import logging
import warnings

from fastapi import APIRouter

from distretto_shared.app import ServiceSpec, cli

from .test_app import SPEC as EXAMPLE

router = APIRouter()


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("the handler broke")


@router.get("/chatty")
async def chatty() -> dict[str, str]:
    logging.getLogger("some.library").warning("a library speaks through the standard logger: %s", "hello")
    warnings.warn("a library warns", UserWarning, stacklevel=1)
    return {"status": "ok"}


SPEC = ServiceSpec(
    name="example",
    settings_cls=EXAMPLE.settings_cls,
    routers=[*EXAMPLE.routers, router],
    migrations=EXAMPLE.migrations,
    consumers=EXAMPLE.consumers,
    topics=EXAMPLE.topics,
)
main = cli(SPEC)

if __name__ == "__main__":
    main()
