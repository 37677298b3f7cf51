def test_home_redirects(client):
    r = client.get("/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/wiki/main-page")


def test_create_and_view(contributor_client, reviewer_client, make_page):
    make_page("Main Page", "Hello [[Docker]].\n")
    r = reviewer_client.get("/wiki/main-page")
    assert r.status_code == 200 and b'class="wikilink new"' in r.data
    r = reviewer_client.submit(
        "/wiki/docker/edit",
        {"title": "Docker", "body": "# D\n\ntext", "summary": "new", "base_revision_id": ""},
    )
    assert r.status_code == 302, r.data[:2000]
    r = reviewer_client.get("/wiki/main-page")
    assert b'class="wikilink"' in r.data
