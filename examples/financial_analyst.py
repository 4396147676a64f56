# financial_analyst.py
import asyncio, os
from pathlib import Path
from pydantic import BaseModel, Field
from flowops import (
    Flujo, Step, step, UsageLimits, init_telemetry,
    make_agent_async,
)
from flowops.domain.models import PipelineContext
from flowops.state import SQLiteBackend

# 1️⃣ Shared run‑state ("memory")
class MarketCtx(PipelineContext):
    companies: list[str] = Field(default_factory=list)
    findings: dict[str, str] = Field(default_factory=dict)
    final_report: str | None = None

# 2️⃣ Steps — mix code & AI agents -------------------------------
class FinancialData(BaseModel):
    company: str
    text: str
    cost_usd: float = 0.0

@step
async def fetch_financials(company: str) -> FinancialData:
    print(f"🔎  Fetching {company} financials …")
    revenue = {"Alpha": 5, "Beta": 4, "Gamma": 6}.get(company, 3)
    return FinancialData(company=company, text=f"Q3 revenue was ${revenue} B")

summariser = make_agent_async(
    model="openai:gpt-4o-mini",
    system_prompt="Summarise the data point in one sentence.",
    output_type=str
)
report_agent = make_agent_async(
    model="openai:gpt-4o",
    system_prompt="Write a professional quarterly market report in Markdown based on the findings.",
    output_type=str
)

# 3️⃣ Pipeline composition ---------------------------------------
analyse_one = fetch_financials >> Step.model_validate({
    "name": "Summarise",
    "agent": summariser
})
pipeline = Step.map_over("AnalyseAll", analyse_one, iterable_input="companies") \
           >> Step.model_validate({
               "name": "FinalReport",
               "agent": report_agent
           })

# 4️⃣ Run with durability & budget -------------------------------
async def main() -> None:
    if "OPENAI_API_KEY" not in os.environ:
        raise RuntimeError("Set OPENAI_API_KEY to run this example.")
    init_telemetry()
    runner = Flujo(
        pipeline, context_model=MarketCtx,
        state_backend=SQLiteBackend(Path("reports.db")),
        usage_limits=UsageLimits(total_cost_usd_limit=0.15),  # 15¢ cap
    )
    try:
        async for result in runner.run_async(
            initial_input=None,
            initial_context_data={"companies": ["Alpha", "Beta", "Gamma"]},
            run_id="q3-analysis-2025",
        ):
            pass  # Get the last result
        print("\n🎉  Done!\n\n" + result.step_history[-1].output)
    except Exception as err:
        print(f"\n⚠️  Halted: {err}")

if __name__ == "__main__":
    asyncio.run(main())
