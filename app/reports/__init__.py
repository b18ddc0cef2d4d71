"""Reports taken out of the system: the exports of the console (导出), as XLSX or CSV.

`app.reports.exports` names what can be exported and builds each `Report` for a manager's scope;
`app.reports.table` writes a report; `bills`, `payments`, `arrears` read the figures. Services
only: no web imports here (the console's pages are app/console/exports.py)."""
