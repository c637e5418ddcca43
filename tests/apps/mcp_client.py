"""
The official MCP Python SDK's client against a houweb server's ``/mcp``
(tests/test_mcp.py): ``python mcp_client.py URL TOKEN CALLS_JSON`` lists the
tools, makes each call of CALLS_JSON (``[[name, arguments], ...]``) and
prints one JSON document with what it saw.
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url: str, token: str, calls: list) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                listed = await session.list_tools()
                results = []
                for name, arguments in calls:
                    result = await session.call_tool(name, arguments)
                    results.append(
                        {
                            "is_error": bool(result.is_error),
                            "content": [
                                c.model_dump(mode="json", exclude_none=True) for c in result.content
                            ],
                        }
                    )
    tools = [
        {"name": t.name, "description": t.description, "input_schema": t.input_schema}
        for t in listed.tools
    ]
    return {"tools": tools, "results": results}


if __name__ == "__main__":
    seen = asyncio.run(
        asyncio.wait_for(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])), 60)
    )
    print(json.dumps(seen))
