"""A minimal Django project in one module, served through its ASGI handler (tests/test_asgi.py)."""

from __future__ import annotations

from typing import Any


def hello(request: Any) -> Any:
    from django.http import JsonResponse

    return JsonResponse(
        {
            "hello": request.GET.get("name", ""),
            "path": request.path,
            "path_info": request.path_info,
            "script_name": request.META.get("SCRIPT_NAME", ""),
        }
    )


def echo(request: Any) -> Any:
    from django.http import JsonResponse

    return JsonResponse({"size": len(request.body)})


def _urlpatterns() -> list[Any]:
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    return [path("hello/", hello), path("echo/", csrf_exempt(echo))]


urlpatterns: list[Any] = []


def application() -> Any:
    """:returns: Django's ASGI handler for this module's URLs (configured once)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="test only",
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["*"],
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
            DATA_UPLOAD_MAX_MEMORY_SIZE=None,
        )
        django.setup()
        urlpatterns[:] = _urlpatterns()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()
