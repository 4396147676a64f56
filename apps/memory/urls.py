from django.urls import path

from apps.memory import apis

urlpatterns = [
    path("tables/", apis.TableListApi.as_view(), name="memory-tables"),
    path("tables/<str:table>/", apis.TableDetailApi.as_view(), name="memory-table"),
    path("tables/<str:table>/columns/", apis.ColumnListApi.as_view(), name="memory-columns"),
    path("tables/<str:table>/columns/<str:column>/", apis.ColumnDetailApi.as_view(),
         name="memory-column"),
    path("tables/<str:table>/rows/", apis.RowListApi.as_view(), name="memory-rows"),
    path("tables/<str:table>/rows/<int:row_id>/", apis.RowDetailApi.as_view(),
         name="memory-row"),
    path("tables/<str:table>/csv/", apis.TableCsvApi.as_view(), name="memory-csv"),
]
