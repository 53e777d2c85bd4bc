"""The server answers over a real socket on both backends."""


async def test_healthz_and_a_first_append(server):
    async with server.client("tok-a") as client:
        assert (await client.get("/healthz")).json() == {"ok": True}
        created = await client.post("/channels", json={"channel": "smoke"})
        assert created.status_code == 201
        appended = await client.post(
            "/channels/smoke/append",
            json={"type": "note", "body": "hello", "msg_id": "01HZX3K4M5N6P7Q8R9S0T1V2W3"},
        )
        assert appended.status_code == 201
        assert appended.json()["message"]["owner"] == "alice"
        page = await client.post("/channels/smoke/read", json={"cursor": 0})
        assert page.json()["messages"] == [appended.json()["message"]]
