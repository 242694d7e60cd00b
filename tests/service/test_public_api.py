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


def test_service_import_defers_the_cache_client() -> None:
    """Importing the service API for FlameInstance does not load the cache client (pyarrow)."""
    import subprocess
    import sys

    code = (
        "import sys; from flame_agents import service; service.FlameInstance(); "
        "print('flame_agents.cache' in sys.modules); "
        "from flame_agents.service import Session; print('flame_agents.cache' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["False", "True"]
