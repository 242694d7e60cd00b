"""The service package exports exactly the seed's API, importable the way the guide does."""

from __future__ import annotations


def test_service_exports() -> None:
    """``flame_agents.service`` exports FlameInstance and Session, as ``flamepy.service`` does."""
    from flame_agents import service

    assert service.__all__ == ["FlameInstance", "Session"]
    assert service.FlameInstance.__module__ == "flame_agents.service.instance"
    assert service.Session.__module__ == "flame_agents.service.session"


def test_names_match_flamepy() -> None:
    """Every public name of flamepy.service exists in ours."""
    import flamepy.service

    from flame_agents import service

    assert set(flamepy.service.__all__) <= set(service.__all__)
