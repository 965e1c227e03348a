"""Where an operator lands after closing or handing over a conversation."""

from __future__ import annotations

from console_helpers import World, login_as

from civicchat.storage.base import Presence


async def test_closing_sends_a_plain_operator_back_to_the_queue_not_to_a_refusal(
    world: World,
) -> None:
    conv = await world.conversation("wa-a")
    base = f"/console/conversations/{conv.id}"
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        assert (await client.post(f"{base}/take", data={"csrf_token": csrf})).status_code == 303
        closed = await client.post(f"{base}/close", data={"csrf_token": csrf})
        assert closed.status_code == 303
        assert closed.headers["location"] == "/console"
        assert (await client.get(closed.headers["location"])).status_code == 200


async def test_handing_over_to_a_colleague_goes_back_to_the_queue(world: World) -> None:
    conv = await world.conversation("wa-a")
    base = f"/console/conversations/{conv.id}"
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        await world.set_presence("op2_a", Presence.AVAILABLE)  # an offline one is refused
        await client.post(f"{base}/take", data={"csrf_token": csrf})
        moved = await client.post(
            f"{base}/transfer", data={"csrf_token": csrf, "to": str(world.ops["op2_a"].id)}
        )
        assert moved.status_code == 303
        assert moved.headers["location"] == "/console"


async def test_a_supervisor_who_closes_stays_on_the_conversation(world: World) -> None:
    conv = await world.conversation("wa-a")
    base = f"/console/conversations/{conv.id}"
    async with world.client() as client:
        csrf = await login_as(client, "sup_a")
        await client.post(f"{base}/take", data={"csrf_token": csrf})
        closed = await client.post(f"{base}/close", data={"csrf_token": csrf})
        assert closed.headers["location"] == base
        assert (await client.get(base)).status_code == 200
