// The npm @modelcontextprotocol/sdk client against a houweb server's /mcp
// (tests/test_mcp.py): node mcp_client.mjs URL TOKEN CALLS_JSON prints the
// same JSON document as mcp_client.py. The SDK is found through NODE_PATH
// (a folder npm installed it in), with require: ES module imports ignore it.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH, "noop.js"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");

const [url, token, callsJson] = process.argv.slice(2);
const timer = setTimeout(() => { console.error("timed out"); process.exit(2); }, 60000);

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: token ? { Authorization: `Bearer ${token}` } : {} },
});
const client = new Client({ name: "houweb-test", version: "1.0.0" });
await client.connect(transport);
const listed = await client.listTools();
const results = [];
for (const [name, args] of JSON.parse(callsJson)) {
  const result = await client.callTool({ name, arguments: args });
  results.push({ is_error: Boolean(result.isError), content: result.content });
}
await client.close();
clearTimeout(timer);
const tools = listed.tools.map((t) => ({ name: t.name, description: t.description, input_schema: t.inputSchema }));
console.log(JSON.stringify({ tools, results }));
