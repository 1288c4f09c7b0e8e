"""Where a new connection goes: a slot, a probe slot, or a 503 at once."""

from api.http.connections import PROBE_SLOTS, PROBE_SLOTS_PER_CLIENT, Slots, admission

CAPS = {"max_connections": 10, "max_per_client": 3}


def place(
    open_total: int, open_from_client: int, probes_total: int = 0, probes_from_client: int = 0
) -> str | None:
    return admission(
        open_total=open_total,
        open_from_client=open_from_client,
        probes_total=probes_total,
        probes_from_client=probes_from_client,
        **CAPS,
    )


def test_a_slot_while_the_server_and_the_address_have_room() -> None:
    assert place(0, 0) == "slot"
    assert place(9, 2) == "slot"


def test_beyond_either_cap_a_probe_slot_while_the_address_holds_few() -> None:
    assert place(3, 3) == "probe"
    assert place(10, 0) == "probe"
    assert (
        place(10, 1, probes_total=PROBE_SLOTS - 1, probes_from_client=PROBE_SLOTS_PER_CLIENT - 1) == "probe"
    )


def test_with_the_probe_slots_taken_or_the_address_holding_its_own_a_503() -> None:
    assert place(10, 0, probes_total=PROBE_SLOTS) is None
    assert place(3, 3, probes_total=1, probes_from_client=PROBE_SLOTS_PER_CLIENT) is None
    assert place(10, 0, probes_total=1, probes_from_client=PROBE_SLOTS_PER_CLIENT) is None


def test_slots_are_counted_per_address_and_given_back() -> None:
    slots = Slots(max_connections=4, max_per_client=2)
    assert [slots.take("a") for _ in range(5)] == ["slot", "slot", "probe", "probe", None]
    assert [slots.take("b"), slots.take("b")] == ["slot", "slot"]
    assert [slots.take("c"), slots.take("c"), slots.take("c")] == ["probe", "probe", None]
    slots.give_back("a", "slot")
    slots.give_back("c", "probe")
    assert slots.take("c") == "slot"
    assert slots.take("d") == "probe"
    assert slots.taken == {"slot": {"a": 1, "b": 2, "c": 1}, "probe": {"a": 2, "c": 1, "d": 1}}
