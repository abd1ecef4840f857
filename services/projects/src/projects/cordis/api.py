"""HTTP route of the CORDIS import (JSON or multipart)."""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP

from fastapi import APIRouter, Request
from pydantic import ValidationError

from distretto_shared.web import Invalid
from projects.cordis import service
from projects.cordis.models import CordisImportResult, CordisImportText
from projects.routing import Ctx

MAX_IMPORT_BYTES = 50 * 1024 * 1024

router = APIRouter()


_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": CordisImportText.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["project"],
                    "properties": {
                        "project": {"type": "string", "format": "binary", "description": "project.csv"},
                        "organization": {"type": "string", "format": "binary", "description": "organization.csv"},
                    },
                }
            },
        },
    }
}


@router.post(
    "/imports/cordis",
    tags=["import"],
    summary="Import a CORDIS export (project.csv + organization.csv): all or nothing",
    openapi_extra=_IMPORT_BODY,
)
async def import_cordis(request: Request, ctx: Ctx) -> CordisImportResult:
    """JSON ``{"project_csv": "...", "organization_csv": "..."}`` or multipart fields ``project`` / ``organization``."""
    ctx.require_staff("import from CORDIS")  # before the body is read
    body = await request.body()
    if len(body) > MAX_IMPORT_BYTES:
        raise Invalid(f"the upload is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB")
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        project_csv, organization_csv = _multipart_files(ctype, body)
    elif ctype.startswith("application/json"):
        try:
            payload = CordisImportText.model_validate_json(body)
        except ValidationError as exc:
            raise Invalid(
                "body must be JSON with project_csv (and organization_csv): "
                + "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()),
            ) from exc
        project_csv, organization_csv = payload.project_csv, payload.organization_csv
    else:
        raise Invalid("send multipart/form-data (fields project, organization) or application/json")
    return await service.import_cordis(ctx, project_csv, organization_csv)


def _multipart_files(ctype: str, body: bytes) -> tuple[str, str]:
    """The two CSV files of a multipart upload (parsed with the standard library's MIME parser)."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"MIME-Version: 1.0\r\nContent-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise Invalid("the multipart body could not be read")
    files: dict[str, str] = {}
    for part in message.iter_parts():
        name = str(part.get_param("name", header="content-disposition") or "")
        key = {"project": "project", "project_csv": "project", "organization": "organization"}.get(name)
        key = key or {"organization_csv": "organization", "organisation": "organization"}.get(name)
        if key is None:
            continue
        raw = part.get_payload(decode=True)
        data = raw if isinstance(raw, bytes) else b""
        try:
            files[key] = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise Invalid(f"field {name!r} is not UTF-8 text") from exc
    if "project" not in files:
        raise Invalid("the multipart upload needs a 'project' field with project.csv")
    return files["project"], files.get("organization", "")
