"""API functions whose results JSON cannot encode, for tests/test_forms.py."""

import houweb


@houweb.apiFunction("results")
def cyclic(request):
    loop = [1]
    loop.append(loop)
    return loop


@houweb.apiFunction("results")
def cyclic_dict(request):
    loop = {"x": float("nan")}
    loop["self"] = loop
    return loop


@houweb.apiFunction("results")
def deep(request):
    nested = []
    for _ in range(100_000):
        nested = [nested]
    return nested


@houweb.apiFunction("results")
def ping(request):
    return "pong"
