"""The RFO templates (Markdown and HTML), kept beside the code so the package ships them."""

MARKDOWN = """\
# Reason For Outage: {{ incident.title | md }}

Incident {{ incident.code | md }} · priority {{ priority }} ({{ peak }}) · \
{{ "resolved" if incident.resolved_at else "ongoing" }}

| | |
|---|---|
{% for key, value in facts.items() %}
| {{ key | label }} | {{ value | md }} |
{% endfor %}

## Summary

| | |
|---|---|
| Outage start | {{ start }} |
| Detected | {{ detected }} |
| Acknowledged | {{ acked }}{% if acked_by %} by {{ acked_by | md }}{% endif %}{% if to_ack %}\
 ({{ to_ack }} after detection){% endif %} |
| End | {{ end }} |
| Duration | {{ duration }} |

## Root cause

{% for text in root_causes %}
- {{ text | md }}
{% else %}
- Not yet determined (add a note starting with "root cause:").
{% endfor %}

## Remedy

{% for text in remedies %}
- {{ text | md }}
{% else %}
- Not yet recorded (add a note starting with "remedy:").
{% endfor %}

## Affected services

| Check | Severity | Failure | Since | Recovered |
|---|---|---|---|---|
{% for m in members %}
| {{ m.check | md }} | {{ m.severity }} | {{ m.failure | md }} | {{ m.since }} | {{ m.recovered }} |
{% endfor %}

## Evidence

{% for text in evidence %}
- {{ text | md }}
{% else %}
- None recorded.
{% endfor %}

## Detection and classification

{% for at, text in classification %}
- {{ at }}: {{ text | md }}
{% endfor %}

## Pages and acknowledgements

{% for at, text in paging %}
- {{ at }}: {{ text | md }}
{% else %}
- No pages were sent.
{% endfor %}
{% if notes %}

## Notes

{% for text in notes %}
- {{ text | md }}
{% endfor %}
{% endif %}

## Timeline

| Time | Event | Detail |
|---|---|---|
{% for at, kind, text in timeline %}
| {{ at }} | {{ kind | md }} | {{ text | md }} |
{% endfor %}
"""

HTML = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>RFO {{ incident.code }}: {{ incident.title }}</title>
<style>
body { font-family: sans-serif; max-width: 60em; margin: 2em auto; }
table { border-collapse: collapse; } td, th { border: 1px solid #bbb; padding: .2em .5em; }
</style>
</head>
<body>
<h1>Reason For Outage: {{ incident.title }}</h1>
<p>Incident {{ incident.code }} · priority {{ priority }} ({{ peak }}) ·
{{ "resolved" if incident.resolved_at else "ongoing" }}</p>
<table>
{% for key, value in facts.items() %}
<tr><th>{{ key | label }}</th><td>{{ value }}</td></tr>
{% endfor %}
</table>
<h2>Summary</h2>
<table>
<tr><th>Outage start</th><td>{{ start }}</td></tr>
<tr><th>Detected</th><td>{{ detected }}</td></tr>
<tr><th>Acknowledged</th><td>{{ acked }}{% if acked_by %} by {{ acked_by }}{% endif %}\
{% if to_ack %} ({{ to_ack }} after detection){% endif %}</td></tr>
<tr><th>End</th><td>{{ end }}</td></tr>
<tr><th>Duration</th><td>{{ duration }}</td></tr>
</table>
<h2>Root cause</h2>
<ul>
{% for text in root_causes %}
<li>{{ text }}</li>
{% else %}
<li>Not yet determined (add a note starting with "root cause:").</li>
{% endfor %}
</ul>
<h2>Remedy</h2>
<ul>
{% for text in remedies %}
<li>{{ text }}</li>
{% else %}
<li>Not yet recorded (add a note starting with "remedy:").</li>
{% endfor %}
</ul>
<h2>Affected services</h2>
<table>
<tr><th>Check</th><th>Severity</th><th>Failure</th><th>Since</th><th>Recovered</th></tr>
{% for m in members %}
<tr><td>{{ m.check }}</td><td>{{ m.severity }}</td><td>{{ m.failure }}</td>\
<td>{{ m.since }}</td><td>{{ m.recovered }}</td></tr>
{% endfor %}
</table>
<h2>Evidence</h2>
<ul>
{% for text in evidence %}
<li>{{ text }}</li>
{% else %}
<li>None recorded.</li>
{% endfor %}
</ul>
<h2>Detection and classification</h2>
<ul>
{% for at, text in classification %}
<li>{{ at }}: {{ text }}</li>
{% endfor %}
</ul>
<h2>Pages and acknowledgements</h2>
<ul>
{% for at, text in paging %}
<li>{{ at }}: {{ text }}</li>
{% else %}
<li>No pages were sent.</li>
{% endfor %}
</ul>
{% if notes %}
<h2>Notes</h2>
<ul>
{% for text in notes %}
<li>{{ text }}</li>
{% endfor %}
</ul>
{% endif %}
<h2>Timeline</h2>
<table>
<tr><th>Time</th><th>Event</th><th>Detail</th></tr>
{% for at, kind, text in timeline %}
<tr><td>{{ at }}</td><td>{{ kind }}</td><td>{{ text }}</td></tr>
{% endfor %}
</table>
</body>
</html>
"""
