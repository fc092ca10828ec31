"""Runs Prefect 3.8.8's own schedule code on a list of cases and prints JSON."""
import json, sys, datetime, asyncio
from zoneinfo import ZoneInfo
from pydantic import TypeAdapter, ValidationError
from prefect.server.schemas.schedules import SCHEDULE_TYPES

ta = TypeAdapter(SCHEDULE_TYPES)

def iso(dt):
    u = dt.astimezone(datetime.timezone.utc)
    s = u.strftime("%Y-%m-%dT%H:%M:%S")
    if u.microsecond:
        s += ".%06d" % u.microsecond
    return s + "Z"

def parse_iso(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))

def run(case):
    out = {"name": case["name"]}
    try:
        s = ta.validate_python(case["schedule"])
    except ValidationError as e:
        out["error"] = [{"loc": list(x["loc"][1:]), "msg": x["msg"], "branch": str(x["loc"][0]) if x["loc"] else ""} for x in e.errors()]
        return out
    except Exception as e:
        out["validate_exc"] = f"{type(e).__name__}: {e}"
        return out
    out["json"] = s.model_dump(mode="json")
    if "start" in case:
        start = parse_iso(case["start"])
        end = parse_iso(case["end"]) if case.get("end") else None
        import signal
        def _alarm(*a): raise TimeoutError("hang")
        signal.signal(signal.SIGALRM, _alarm); signal.alarm(20)
        try:
            gen = list(s._get_dates_generator(n=case["n"], start=start, end=end))
            out["gen"] = [iso(d) for d in gen]
            out["dates"] = [iso(d) for d in sorted(gen)]
        except Exception as e:
            out["exc"] = f"{type(e).__name__}: {e}"
        finally:
            signal.alarm(0)
    return out

cases = json.load(open(sys.argv[1]))
print(json.dumps([run(c) for c in cases], indent=1))
