"""The tutorial's application: an API function and a page that calls it."""

import houweb

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Basket</title></head>
<body>
  <p>Prices: <input id="prices" value="2.5, 4"> Tax: <input id="tax" value="0.2"></p>
  <button id="go">Total</button> <output id="total"></output>
  <script type="module">
    import { api, APIError } from "/api/client.js";
    document.getElementById("go").onclick = async () => {
      const prices = document.getElementById("prices").value.split(",").map(Number);
      const tax = Number(document.getElementById("tax").value);
      const out = document.getElementById("total");
      try {
        out.value = await api.shop.total(prices, tax);
      } catch (e) {
        out.value = e instanceof APIError ? `${e.status}: ${e.message}` : String(e);
      }
    };
  </script>
</body></html>
"""


@houweb.apiFunction(namespace="shop")
def total(request: houweb.Request, prices: list[float], tax: float = 0.0) -> float:
    """The total of ``prices`` with ``tax`` (0.2 for 20%) added, to the cent."""
    if tax < 0:
        raise houweb.APIError("tax cannot be negative")
    return round(sum(prices) * (1 + tax), 2)


@houweb.urlHandler("/")
def page(request: houweb.Request) -> houweb.Response:
    return houweb.Response(PAGE)
