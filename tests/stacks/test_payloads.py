"""The realtime payloads a finished job's event carries pass each SDK's own types, and the
Gemini ones agree with the export: a job tool is declared NON_BLOCKING, and its pushed
`toolResponse` answers the model's call with the scheduling the delivery hint asks for."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from helpers import export

SCHEDULING = {"interrupt": "INTERRUPT", "when_idle": "WHEN_IDLE", "silent": "SILENT"}


def finished_event(offstage, job_id: str) -> dict:
    """The job's ending as the event stream delivers it (replayed from the start)."""
    url = f"{offstage.base}/v1/events?after=0&job={job_id}"
    offstage.wait_until_ended(job_id)
    with urllib.request.urlopen(url, timeout=10) as stream:
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                event = json.loads(line[len("data: "):])
                if event["type"] in ("job.completed", "job.failed", "job.cancelled"):
                    return event
    raise AssertionError("no ending event")


async def start_job(offstage, delivery: str, call_id: str) -> str:
    headers = {"Offstage-Conversation": f"payloads-{delivery}", "Offstage-Delivery": delivery}
    http = httpx2.AsyncClient(headers=headers)
    async with streamable_http_client(offstage.mcp, http_client=http) as (read, write):
        async with ClientSession(read, write) as mcp:
            await mcp.initialize()
            result = await mcp.call_tool(
                "generate_image", {"prompt": f"a fox, {delivery}"}, meta={"offstage/call_id": call_id}
            )
            return result.structured_content["job_id"]


@pytest.mark.parametrize("delivery", ["interrupt", "when_idle", "silent"])
def test_gemini_payloads_pass_google_genai_types_and_follow_the_hint(offstage, delivery):
    from google.genai import types

    call_id = f"function-call-{delivery}"
    event = finished_event(offstage, asyncio.run(start_job(offstage, delivery, call_id)))
    gemini = event["realtime"]["gemini"]
    response = types.LiveClientToolResponse.model_validate(gemini["tool_response"]["toolResponse"])
    [answer] = response.function_responses
    assert answer.id == call_id and answer.name == "generate_image"
    assert answer.scheduling == types.FunctionResponseScheduling(SCHEDULING[delivery])
    assert answer.will_continue is False, "the final response closes the NON_BLOCKING call"
    assert answer.response["output"]["status"] == "completed"
    content = types.LiveClientContent.model_validate(gemini["client_content"]["clientContent"])
    assert content.turn_complete == (delivery != "silent")
    # What the tool response answers is declared NON_BLOCKING, the only kind it applies to.
    [holder] = export("gemini-live")
    behavior = {d["name"]: d["behavior"] for d in holder["functionDeclarations"]}
    assert behavior["generate_image"] == "NON_BLOCKING"


@pytest.mark.parametrize("delivery", ["interrupt", "when_idle", "silent"])
def test_openai_payloads_pass_the_openai_sdk_types(offstage, delivery):
    from openai.types.realtime import RealtimeClientEventParam
    from pydantic import TypeAdapter

    event = finished_event(offstage, asyncio.run(start_job(offstage, delivery, "unused")))
    messages = event["realtime"]["openai"]
    adapter = TypeAdapter(RealtimeClientEventParam)
    for message in messages:
        adapter.validate_python(message)
    kinds = [message["type"] for message in messages]
    expected = {
        "interrupt": ["response.cancel", "conversation.item.create", "response.create"],
        "when_idle": ["conversation.item.create", "response.create"],
        "silent": ["conversation.item.create"],
    }[delivery]
    assert kinds == expected
