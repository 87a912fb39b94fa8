kite_add_test(test_pipeline
  SOURCES test_pipeline_fusion.cpp test_pipeline_eval.cpp test_pipeline_compose.cpp
  LABELS retrieval
  RESOURCES scifact klue)
