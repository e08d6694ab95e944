"""Skills for agents (thin scripts and their SKILL.md), shipped inside the package as cfn._skills."""
