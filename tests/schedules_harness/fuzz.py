import json, random
random.seed(7)
C = []
def case(name, schedule, start=None, n=5, end=None):
    c = {"name": name, "schedule": schedule}
    if start:
        c["start"] = start; c["n"] = n
        if end: c["end"] = end
    C.append(c)
TZS = ["UTC", "America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata", "America/Santiago", "Australia/Lord_Howe", "Europe/Berlin", None]
STARTS = ["2024-03-10T06:20:00Z", "2024-11-03T05:10:00Z", "2024-03-31T00:30:00Z", "2024-10-27T00:10:00Z", "2024-04-06T15:00:00Z", "2024-09-07T03:30:00Z", "2024-10-05T15:30:00Z", "2024-04-06T14:45:30.5Z", "2024-02-28T23:59:59Z", "2023-12-31T23:00:00Z"]
CRONS = ["0 * * * *", "*/15 * * * *", "30 2 * * *", "30 1 * * *", "0 2 * * *", "0 0 * * *", "15,45 1-3 * * *", "0 9 * * mon-fri", "0 0 1,15 * *", "0 0 1,15 * mon", "0 0 */2 * *", "0 0 * * */2",
 "0 12 L * *", "0 12 * * 1#1", "0 12 * * l0", "0 12 * * sat-sun", "0 12 * * fri-mon", "0 12 * nov-feb *", "0 22-2 * * *", "0 22-2/3 * * *", "5-5 * * * *", "0 0 * * 0-7", "0 0 * * 7",
 "0 0 29 2 *", "0 0 31 * *", "0 0 1-7 * 1", "0 0 8-14 * */3", "*/7 */5 * * *", "0 0 1 */3 *", "10/25 * * * *", "0 0 ? * 2", "0 0 1 jan *", "@hourly", "@weekly", "0 3 * * * 15", "*/20 * * * * */30", "0 0 5-l * *", "0 0 1-31 * */3", "0 0 */1 * mon", "0 0 * * mon#2,fri#3", "0 0 * * mon-wed#1"]
for cron in CRONS:
    for day_or in (True, False):
        for i in range(3):
            tz = random.choice(TZS)
            st = random.choice(STARTS)
            s = {"cron": cron, "day_or": day_or}
            if tz is not None: s["timezone"] = tz
            end = None
            if random.random() < 0.3:
                end = st[:11] + "23:00:00Z"
            case(f"fz_cron_{len(C)}", s, st, n=random.choice([1, 3, 7, 12]), end=end)
INVALID = ["", "* * * *", "* * * * * * * *", "60 * * * *", "* 24 * * *", "* * 32 * *", "* * 0 * *", "* * * 13 *", "* * * 0 *", "* * * * 8", "*/0 * * * *", "/5 * * * *", "5/ * * * *", "* * 15W * *",
  "* * * * 5L", "* * * * L", "* * * * 5#L", "* * * * 5#6", "* * * * 5#0", "* * * * +5", "* * * * 1,5#2", "* * * * 1-5#2", "h * * * *", "H(0-5) * * * *", "r * * * *", "R/5 * * * *", "* * ? * *", "? * * * *", "*? * * * *",
  "* * * jan-mon *", "* * * * jan", "* * * mon *", "* * * * sunday", "a * * * *", "1-2-3 * * * *", "1,,2 * * * *", "@reboot", "@daily ", " @daily", "0 0 l-5 * *", "0 0 * * l", "0 0 1-l/2 * *", "0 0 * * 0-6/0", "* * * * * 60", "* * * * * * 1969", "* * * * * * 2100", "1-60 * * * *", "-1 * * * *"]
for cron in INVALID:
    case(f"fz_cronv_{len(C)}", {"cron": cron}, "2024-01-01T00:00:00Z", n=3)
# intervals
IVS = [1, 59.5, 60, 600, 3600, 5400, 7200, 86399, 86400, 86401, 90000, 172800, 604800, 3*86400+1800, 2419200]
ANCHORS = ["2020-01-01T00:00:00Z", "2024-03-09T07:30:00Z", "2024-11-02T05:30:00Z", "2024-03-30T01:30:00Z", "2024-10-26T00:30:00Z", "2030-06-01T12:00:00Z", "2024-03-10T06:45:00Z", "2024-11-03T06:15:00Z", "2020-01-01T09:00:00-05:00"]
for i in range(160):
    tz = random.choice(TZS)
    s = {"interval": random.choice(IVS), "anchor_date": random.choice(ANCHORS)}
    if tz is not None: s["timezone"] = tz
    st = random.choice(STARTS)
    end = None
    if random.random() < 0.25:
        end = st[:11] + "23:00:00Z"
    case(f"fz_int_{len(C)}", s, st, n=random.choice([1, 4, 9, 12]), end=end)
# rrules
RRS = ["FREQ=DAILY", "FREQ=HOURLY", "FREQ=HOURLY;INTERVAL=5", "FREQ=MINUTELY;INTERVAL=17", "FREQ=MINUTELY;INTERVAL=30;BYHOUR=1,2,3", "FREQ=SECONDLY;INTERVAL=3600",
  "DTSTART:20240301T023000\nRRULE:FREQ=DAILY", "DTSTART:20240301T013000\nRRULE:FREQ=DAILY", "DTSTART:20240101T000000\nRRULE:FREQ=WEEKLY;BYDAY=SA,SU;BYHOUR=1,2,3",
  "DTSTART:20240101T000000\nRRULE:FREQ=MONTHLY;BYMONTHDAY=1,15,-1;BYHOUR=2;BYMINUTE=30", "DTSTART:20240101T090000\nRRULE:FREQ=DAILY;COUNT=100", "DTSTART:20240101T090000\nRRULE:FREQ=DAILY;UNTIL=20241103T090000",
  "DTSTART:20240101T090000Z\nRRULE:FREQ=DAILY;UNTIL=20241103T090000Z", "DTSTART;TZID=America/New_York:20240101T013000\nRRULE:FREQ=DAILY", "DTSTART:20240101T000000\nRRULE:FREQ=HOURLY;BYHOUR=0,1,2,3\nEXDATE:20240310T020000,20241103T010000",
  "DTSTART:20240101T000000\nRRULE:FREQ=YEARLY;BYMONTH=3,11;BYDAY=2SU,1SU;BYHOUR=1,2,3", "DTSTART:20240101T000000\nRDATE:20240310T023000,20241103T013000,20240331T013000", "DTSTART:20240101T000000\nRRULE:FREQ=DAILY;BYHOUR=2\nEXRULE:FREQ=WEEKLY;BYDAY=SU;BYHOUR=2",
  "DTSTART:20240101T000000\nRRULE:FREQ=MINUTELY;INTERVAL=45", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;BYHOUR=9", "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17", "RRULE:FREQ=DAILY;BYHOUR=1,2,3;BYMINUTE=0,30"]
for i in range(120):
    tz = random.choice(TZS)
    s = {"rrule": random.choice(RRS)}
    if tz is not None: s["timezone"] = tz
    st = random.choice(STARTS)
    end = None
    if random.random() < 0.25:
        end = st[:11] + "23:00:00Z"
    case(f"fz_rr_{len(C)}", s, st, n=random.choice([1, 4, 9, 12]), end=end)
RINV = ["FREQ=DAILY;BYHOUR=24", "FREQ=DAILY;INTERVAL=0", "FREQ=DAILY;COUNT=x", "FREQ=DAILY;BYDAY=XX", "FREQ=DAILY;", "FREQ=DAILY;;BYHOUR=1", "FREQ=DAILY;BYHOUR", "FREQ=DAILY;WKST=XX", "RRULE;X=1:FREQ=DAILY",
  "DTSTART:2024\nRRULE:FREQ=DAILY", "DTSTART:20240101T000000,20240102T000000\nRRULE:FREQ=DAILY", "FOO:BAR\nRRULE:FREQ=DAILY", "EXDATE;FOO=1:20240101T000000\nRRULE:FREQ=DAILY", "DTSTART;TZID=Europe/Paris:20240101T000000Z\nRRULE:FREQ=DAILY",
  "DTSTART;TZID=Europe/Paris:20240101T000000\nRRULE:FREQ=DAILY;UNTIL=20250101T000000", "DTSTART:20240101T000000Z\nRRULE:FREQ=DAILY;UNTIL=20250101T000000", "FREQ=DAILY;UNTIL=20200101T000000Z", "FREQ=DAILY;UNTIL=20190101", "DTSTART:20240101T000000\nRRULE:FREQ=DAILY;UNTIL=20230101T000000",
  "FREQ=WEEKLY;BYMONTHDAY=1", "FREQ=MONTHLY;BYSETPOS=0;BYDAY=MO", "FREQ=DAILY;BYMONTH=13", "RRULE:FREQ=DAILY:X", "FREQ=DAILY\nRRULE:FREQ=HOURLY", "DTSTART:20240101T000000\nRDATE;VALUE=DATE:20240105", "FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=2"]
for r in RINV:
    case(f"fz_rrv_{len(C)}", {"rrule": r}, "2024-01-01T00:00:00Z", n=3)
json.dump(C, open("/tmp/probe/fuzz.json", "w"), indent=1)
print(len(C))
