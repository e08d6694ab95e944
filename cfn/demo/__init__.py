"""`cfn demo`: a whole CFN Loop on a sample project, with scripted stand-ins for LLM agents."""
