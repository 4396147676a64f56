from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token

from apps.core.api import api_not_found

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/auth/token/", obtain_auth_token, name="api-token"),
    path("api/memory/", include("apps.memory.urls")),
    path("api/workflows/", include("apps.workflows.urls")),
    path("api/runs/", include("apps.runs.urls")),
    path("hooks/", include("apps.integrations.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # Last: the API's and hooks' paths are exact, so anything else under them is a JSON 404.
    re_path(r"^api/", api_not_found, name="api-not-found"),
    re_path(r"^hooks/", api_not_found, name="hooks-not-found"),
]
