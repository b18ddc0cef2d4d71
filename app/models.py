"""Every table, imported in one place for Alembic and for create-all in tests."""

from sqlmodel import SQLModel

from app.anomalies.models import Anomaly
from app.batch.models import BatchJob
from app.commands.models import Command, CommandAttempt
from app.console.models import (AuditEntry, Manager, ManagerBuilding, ManagerSession,
                                RateCounter)
from app.estate.models import (Account, Building, BuildingDay, DailyFrozen, Estate, FrozenDay,
                               Gateway, Meter, Reading, RelayChange, ShareRun, WorkerHeartbeat)
from app.jobs.models import JobRun
from app.ledger.models import AccountBalance, LedgerDay, LedgerEntry
from app.messages.models import Message
from app.notices.models import Notice
from app.orders.models import (Order, ReconcileDifference, ReconcileRun, Refund,
                               RefusedCount, RefusedNotification)
from app.policy.models import (CutApproval, CutDecision, HolidayArrangement, HolidayDay,
                               ManagerTask)
from app.resident.models import (AgreementAcceptance, Resident, ResidentAccount,
                                 SmsCode)
from app.tariffs.models import StoredTariff, StoredTariffVersion

metadata = SQLModel.metadata

__all__ = [
    "Account", "AccountBalance", "AgreementAcceptance", "BatchJob", "Message", "Resident",
    "ResidentAccount", "SmsCode", "Anomaly", "AuditEntry", "Building", "BuildingDay", "Command",
    "CommandAttempt", "CutApproval", "CutDecision", "DailyFrozen", "Estate", "FrozenDay",
    "Gateway", "HolidayArrangement", "HolidayDay", "JobRun", "LedgerDay", "LedgerEntry", "Manager",
    "ManagerBuilding", "ManagerSession", "ManagerTask", "Meter", "Notice", "Order",
    "RateCounter", "Reading", "ReconcileDifference", "ReconcileRun", "Refund",
    "RefusedCount", "RefusedNotification", "RelayChange", "ShareRun", "StoredTariff", "StoredTariffVersion",
    "WorkerHeartbeat",
    "metadata",
]
