"""The labs the grader knows (paykit.lab.grading.LABS): each module here holds one `LAB`."""
