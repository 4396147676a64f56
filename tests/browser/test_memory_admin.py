"""A person in real headless Chromium: the memory admin end to end (issue: the no-code DB).

Log in, create a table with two columns, add a row, see a field error for a bad value,
see the row in the list with its columns, export CSV.
"""

from __future__ import annotations

import urllib.request

import pytest
from django.contrib.auth import get_user_model
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from apps.memory.models import Row, Table

pytestmark = pytest.mark.django_db(transaction=True)


def submit(browser, button) -> None:
    """Click and wait for the next page: a click returns before the browser navigates."""
    page = browser.find_element(By.TAG_NAME, "html")
    button.click()
    WebDriverWait(browser, 15).until(lambda d: _gone(page))


def _gone(element) -> bool:
    try:
        element.tag_name  # noqa: B018 - touching it raises once the page was replaced
        return False
    except StaleElementReferenceException:
        return True


def log_in(browser, live_server) -> None:
    get_user_model().objects.create_superuser("ada", "ada@example.com", "s3cret-pass")
    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys("ada")
    browser.find_element(By.NAME, "password").send_keys("s3cret-pass")
    submit(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
    assert "Site administration" in browser.page_source


def add_table(browser, live_server) -> Table:
    browser.get(f"{live_server.url}/admin/memory/table/add/")
    browser.find_element(By.NAME, "name").send_keys("tickets")
    browser.find_element(By.NAME, "columns-0-name").send_keys("title")
    browser.find_element(By.NAME, "columns-0-required").click()
    browser.find_element(By.CSS_SELECTOR, "#columns-group .add-row a").click()
    browser.find_element(By.NAME, "columns-1-name").send_keys("points")
    Select(browser.find_element(By.NAME, "columns-1-type")).select_by_value("integer")
    submit(browser, browser.find_element(By.NAME, "_save"))
    problems = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".errornote, .errorlist")]
    assert "was added successfully" in browser.page_source, problems
    return Table.objects.get(name="tickets")


def submit_row(browser, title: str, points: str) -> None:
    for name, value in (("title", title), ("points", points)):
        field = browser.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    submit(browser, browser.find_element(By.NAME, "_save"))


def test_a_person_defines_a_table_adds_a_row_and_exports_it(browser, live_server):
    log_in(browser, live_server)
    table = add_table(browser, live_server)

    # a bad value is named on its field, and nothing is stored
    browser.get(f"{live_server.url}/admin/memory/row/?table__id__exact={table.pk}")
    # (the admin shows object tools in capitals, so links are found by their target)
    submit(browser, browser.find_element(By.CSS_SELECTOR, ".object-tools a.addlink"))
    browser.execute_script("document.querySelector('[name=points]').type = 'text'")
    submit_row(browser, "Printer on fire", "lots")
    errors = browser.find_element(By.CSS_SELECTOR, ".field-points .errorlist").text
    assert "integer" in errors
    assert not Row.objects.exists()

    # a good row lands in the list, with the table's columns as list columns
    submit_row(browser, "Printer on fire", "3")
    assert "was added successfully" in browser.page_source
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#result_list th")]
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#result_list td")]
    assert {"TITLE", "POINTS"} <= {h.strip().upper() for h in headers}
    assert "Printer on fire" in cells and "3" in cells

    # export CSV with the browser's session
    export = browser.find_element(By.CSS_SELECTOR, ".object-tools a[href*='/export/']"
                                  ).get_attribute("href")
    session = browser.get_cookie("sessionid")["value"]
    request = urllib.request.Request(export, headers={"Cookie": f"sessionid={session}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read().decode()
    assert body.splitlines()[0].startswith("title,points")
    assert "Printer on fire,3" in body
