"""The data gate (pipeline step 4): component.py (AnomaliesGateSpec, AnomaliesGate), executor.py
(Executor, DataAnomaliesError, read_anomalies). Infra validation (step 12) is components/infra_validate/.
"""
